<?xml version="1.0" encoding="UTF-8"?>
<!-- Summary of a UBL 2.1 Invoice or CreditNote as a small flat XML (gateway.transforms.extract).
     Field meaning: EN 16931 business terms named in each comment. XSLT 1.0 (lxml). -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <xsl:output method="xml" encoding="UTF-8"/>

  <xsl:template match="/">
    <xsl:variable name="doc" select="/*"/>
    <xsl:variable name="currency" select="normalize-space($doc/cbc:DocumentCurrencyCode)"/>
    <xsl:variable name="seller" select="$doc/cac:AccountingSupplierParty/cac:Party"/>
    <xsl:variable name="buyer" select="$doc/cac:AccountingCustomerParty/cac:Party"/>
    <summary>
      <profile><xsl:value-of select="normalize-space($doc/cbc:CustomizationID)"/></profile>
      <!-- BT-1, BT-3, BT-2, BT-5 -->
      <number><xsl:value-of select="normalize-space($doc/cbc:ID)"/></number>
      <type_code><xsl:value-of select="normalize-space($doc/cbc:InvoiceTypeCode | $doc/cbc:CreditNoteTypeCode)"/></type_code>
      <issue_date><xsl:value-of select="normalize-space($doc/cbc:IssueDate)"/></issue_date>
      <currency><xsl:value-of select="$currency"/></currency>
      <!-- BT-27 (BT-28 as fallback), BT-30, BT-29, BT-31 -->
      <seller_name>
        <xsl:choose>
          <xsl:when test="normalize-space($seller/cac:PartyLegalEntity/cbc:RegistrationName)">
            <xsl:value-of select="normalize-space($seller/cac:PartyLegalEntity/cbc:RegistrationName)"/>
          </xsl:when>
          <xsl:otherwise><xsl:value-of select="normalize-space($seller/cac:PartyName/cbc:Name)"/></xsl:otherwise>
        </xsl:choose>
      </seller_name>
      <xsl:for-each select="$seller/cac:PartyLegalEntity/cbc:CompanyID">
        <seller_legal_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></seller_legal_id>
      </xsl:for-each>
      <xsl:for-each select="$seller/cac:PartyIdentification/cbc:ID">
        <seller_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></seller_id>
      </xsl:for-each>
      <seller_vat_id><xsl:value-of select="normalize-space($seller/cac:PartyTaxScheme[normalize-space(cac:TaxScheme/cbc:ID) = 'VAT']/cbc:CompanyID)"/></seller_vat_id>
      <!-- BT-44 (BT-45 as fallback), BT-47, BT-46 -->
      <buyer_name>
        <xsl:choose>
          <xsl:when test="normalize-space($buyer/cac:PartyLegalEntity/cbc:RegistrationName)">
            <xsl:value-of select="normalize-space($buyer/cac:PartyLegalEntity/cbc:RegistrationName)"/>
          </xsl:when>
          <xsl:otherwise><xsl:value-of select="normalize-space($buyer/cac:PartyName/cbc:Name)"/></xsl:otherwise>
        </xsl:choose>
      </buyer_name>
      <xsl:for-each select="$buyer/cac:PartyLegalEntity/cbc:CompanyID">
        <buyer_legal_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></buyer_legal_id>
      </xsl:for-each>
      <xsl:for-each select="$buyer/cac:PartyIdentification/cbc:ID">
        <buyer_id scheme="{normalize-space(@schemeID)}"><xsl:value-of select="normalize-space(.)"/></buyer_id>
      </xsl:for-each>
      <!-- BT-49 buyer electronic address and its scheme (BT-49-1) -->
      <buyer_endpoint scheme="{normalize-space($buyer/cbc:EndpointID/@schemeID)}"><xsl:value-of select="normalize-space($buyer/cbc:EndpointID)"/></buyer_endpoint>
      <!-- BT-10, BT-13, BT-23 -->
      <service_code><xsl:value-of select="normalize-space($doc/cbc:BuyerReference)"/></service_code>
      <engagement_number><xsl:value-of select="normalize-space($doc/cac:OrderReference/cbc:ID)"/></engagement_number>
      <billing_framework><xsl:value-of select="normalize-space($doc/cbc:ProfileID)"/></billing_framework>
      <!-- BT-109, BT-110, BT-112, BT-115 -->
      <total_net><xsl:value-of select="normalize-space($doc/cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount)"/></total_net>
      <total_vat>
        <xsl:choose>
          <xsl:when test="$doc/cac:TaxTotal/cbc:TaxAmount[normalize-space(@currencyID) = $currency]">
            <xsl:value-of select="normalize-space($doc/cac:TaxTotal/cbc:TaxAmount[normalize-space(@currencyID) = $currency])"/>
          </xsl:when>
          <xsl:otherwise><xsl:value-of select="normalize-space($doc/cac:TaxTotal/cbc:TaxAmount)"/></xsl:otherwise>
        </xsl:choose>
      </total_vat>
      <total_gross><xsl:value-of select="normalize-space($doc/cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount)"/></total_gross>
      <amount_due><xsl:value-of select="normalize-space($doc/cac:LegalMonetaryTotal/cbc:PayableAmount)"/></amount_due>
      <line_count><xsl:value-of select="count($doc/cac:InvoiceLine | $doc/cac:CreditNoteLine)"/></line_count>
      <!-- BG-24 documents that carry an attachment (embedded object or external URI) -->
      <attachment_count><xsl:value-of select="count($doc/cac:AdditionalDocumentReference[cac:Attachment])"/></attachment_count>
    </summary>
  </xsl:template>
</xsl:stylesheet>
