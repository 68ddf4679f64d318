<?xml version="1.0" encoding="UTF-8"?>
<!-- Summary of a UN/CEFACT CII CrossIndustryInvoice as a small flat XML (gateway.transforms.extract).
     Field meaning: EN 16931 business terms named in each comment. XSLT 1.0 (lxml). -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
    xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
    xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
  <xsl:output method="xml" encoding="UTF-8"/>

  <xsl:template match="/">
    <xsl:variable name="doc" select="/rsm:CrossIndustryInvoice"/>
    <xsl:variable name="tx" select="$doc/rsm:SupplyChainTradeTransaction"/>
    <xsl:variable name="agreement" select="$tx/ram:ApplicableHeaderTradeAgreement"/>
    <xsl:variable name="settlement" select="$tx/ram:ApplicableHeaderTradeSettlement"/>
    <xsl:variable name="sums" select="$settlement/ram:SpecifiedTradeSettlementHeaderMonetarySummation"/>
    <xsl:variable name="currency" select="normalize-space($settlement/ram:InvoiceCurrencyCode)"/>
    <xsl:variable name="seller" select="$agreement/ram:SellerTradeParty"/>
    <xsl:variable name="buyer" select="$agreement/ram:BuyerTradeParty"/>
    <xsl:variable name="date" select="$doc/rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString"/>
    <summary>
      <profile><xsl:value-of select="normalize-space($doc/rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID)"/></profile>
      <!-- BT-1, BT-3, BT-2 (format 102 YYYYMMDD to ISO), BT-5 -->
      <number><xsl:value-of select="normalize-space($doc/rsm:ExchangedDocument/ram:ID)"/></number>
      <type_code><xsl:value-of select="normalize-space($doc/rsm:ExchangedDocument/ram:TypeCode)"/></type_code>
      <issue_date>
        <xsl:variable name="raw" select="normalize-space($date)"/>
        <xsl:choose>
          <xsl:when test="(not($date/@format) or $date/@format = '102') and string-length($raw) = 8 and translate($raw, '0123456789', '') = ''">
            <xsl:value-of select="concat(substring($raw, 1, 4), '-', substring($raw, 5, 2), '-', substring($raw, 7, 2))"/>
          </xsl:when>
          <xsl:otherwise><xsl:value-of select="$raw"/></xsl:otherwise>
        </xsl:choose>
      </issue_date>
      <currency><xsl:value-of select="$currency"/></currency>
      <!-- BT-27, BT-30, BT-29 (ID and GlobalID), BT-31 -->
      <seller_name><xsl:value-of select="normalize-space($seller/ram:Name)"/></seller_name>
      <xsl:for-each select="$seller/ram:SpecifiedLegalOrganization/ram:ID">
        <seller_legal_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></seller_legal_id>
      </xsl:for-each>
      <xsl:for-each select="$seller/ram:ID | $seller/ram:GlobalID">
        <seller_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></seller_id>
      </xsl:for-each>
      <seller_vat_id><xsl:value-of select="normalize-space($seller/ram:SpecifiedTaxRegistration/ram:ID[normalize-space(@schemeID) = 'VA'])"/></seller_vat_id>
      <!-- BT-44, BT-47, BT-46 -->
      <buyer_name><xsl:value-of select="normalize-space($buyer/ram:Name)"/></buyer_name>
      <xsl:for-each select="$buyer/ram:SpecifiedLegalOrganization/ram:ID">
        <buyer_legal_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></buyer_legal_id>
      </xsl:for-each>
      <xsl:for-each select="$buyer/ram:ID | $buyer/ram:GlobalID">
        <buyer_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></buyer_id>
      </xsl:for-each>
      <!-- BT-49 buyer electronic address and its scheme (BT-49-1) -->
      <buyer_endpoint scheme="{normalize-space($buyer/ram:URIUniversalCommunication/ram:URIID/@schemeID)}"><xsl:value-of select="normalize-space($buyer/ram:URIUniversalCommunication/ram:URIID)"/></buyer_endpoint>
      <!-- BT-10, BT-13, BT-23 -->
      <service_code><xsl:value-of select="normalize-space($agreement/ram:BuyerReference)"/></service_code>
      <engagement_number><xsl:value-of select="normalize-space($agreement/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID)"/></engagement_number>
      <billing_framework><xsl:value-of select="normalize-space($doc/rsm:ExchangedDocumentContext/ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID)"/></billing_framework>
      <!-- BT-109, BT-110 (in the invoice currency), BT-112, BT-115 -->
      <total_net><xsl:value-of select="normalize-space($sums/ram:TaxBasisTotalAmount)"/></total_net>
      <total_vat>
        <xsl:choose>
          <xsl:when test="$sums/ram:TaxTotalAmount[normalize-space(@currencyID) = $currency]">
            <xsl:value-of select="normalize-space($sums/ram:TaxTotalAmount[normalize-space(@currencyID) = $currency])"/>
          </xsl:when>
          <xsl:when test="$sums/ram:TaxTotalAmount[not(@currencyID)]">
            <xsl:value-of select="normalize-space($sums/ram:TaxTotalAmount[not(@currencyID)])"/>
          </xsl:when>
          <xsl:otherwise><xsl:value-of select="normalize-space($sums/ram:TaxTotalAmount)"/></xsl:otherwise>
        </xsl:choose>
      </total_vat>
      <total_gross><xsl:value-of select="normalize-space($sums/ram:GrandTotalAmount)"/></total_gross>
      <amount_due><xsl:value-of select="normalize-space($sums/ram:DuePayableAmount)"/></amount_due>
      <line_count><xsl:value-of select="count($tx/ram:IncludedSupplyChainTradeLineItem)"/></line_count>
      <!-- BG-24 documents that carry an attachment (embedded object or external URI) -->
      <attachment_count><xsl:value-of select="count($agreement/ram:AdditionalReferencedDocument[ram:AttachmentBinaryObject or ram:URIID])"/></attachment_count>
    </summary>
  </xsl:template>
</xsl:stylesheet>
