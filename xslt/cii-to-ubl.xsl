<?xml version="1.0" encoding="UTF-8"?>
<!-- UN/CEFACT CII (D16B, Factur-X / EN 16931 binding) to UBL 2.1 Invoice or CreditNote, EN 16931 core:
     header, notes, references, parties, delivery, payment means and terms, allowances/charges, VAT breakdown,
     totals, lines, attachments. Elements beyond EN 16931 (EXTENDED) are dropped. Credit-note type codes
     (UNTDID 1001 81, 83, 261, 262, 296, 308, 381, 396, 420, 458, 532) give a CreditNote. XSLT 1.0 (lxml). -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
    xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
    xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
    xmlns:qdt="urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
    xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    exclude-result-prefixes="rsm ram udt qdt">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:variable name="doc" select="/rsm:CrossIndustryInvoice"/>
  <xsl:variable name="tx" select="$doc/rsm:SupplyChainTradeTransaction"/>
  <xsl:variable name="agr" select="$tx/ram:ApplicableHeaderTradeAgreement"/>
  <xsl:variable name="dlv" select="$tx/ram:ApplicableHeaderTradeDelivery"/>
  <xsl:variable name="stl" select="$tx/ram:ApplicableHeaderTradeSettlement"/>
  <xsl:variable name="sums" select="$stl/ram:SpecifiedTradeSettlementHeaderMonetarySummation"/>
  <xsl:variable name="cur" select="normalize-space($stl/ram:InvoiceCurrencyCode)"/>
  <xsl:variable name="taxcur" select="normalize-space($stl/ram:TaxCurrencyCode)"/>
  <xsl:variable name="type" select="normalize-space($doc/rsm:ExchangedDocument/ram:TypeCode)"/>
  <xsl:variable name="credit" select="contains(' 81 83 261 262 296 308 381 396 420 458 532 ', concat(' ', $type, ' '))"/>
  <xsl:variable name="duedate" select="$stl/ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString"/>

  <!-- ===== helpers ===== -->
  <xsl:template name="date">
    <xsl:param name="v"/>
    <xsl:variable name="s" select="normalize-space($v)"/>
    <xsl:choose>
      <xsl:when test="string-length($s) = 8 and translate($s, '0123456789', '') = ''">
        <xsl:value-of select="concat(substring($s, 1, 4), '-', substring($s, 5, 2), '-', substring($s, 7, 2))"/>
      </xsl:when>
      <xsl:otherwise><xsl:value-of select="$s"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template name="amount">
    <xsl:param name="name"/>
    <xsl:param name="v"/>
    <xsl:param name="c" select="$cur"/>
    <xsl:if test="$v">
      <xsl:element name="cbc:{$name}">
        <xsl:attribute name="currencyID"><xsl:value-of select="$c"/></xsl:attribute>
        <xsl:value-of select="normalize-space($v)"/>
      </xsl:element>
    </xsl:if>
  </xsl:template>

  <xsl:template name="scheme">
    <xsl:if test="normalize-space(@schemeID)">
      <xsl:attribute name="schemeID"><xsl:value-of select="normalize-space(@schemeID)"/></xsl:attribute>
    </xsl:if>
  </xsl:template>

  <xsl:template name="text">
    <xsl:param name="name"/>
    <xsl:param name="v"/>
    <xsl:if test="normalize-space($v)">
      <xsl:element name="cbc:{$name}"><xsl:value-of select="$v"/></xsl:element>
    </xsl:if>
  </xsl:template>

  <!-- ===== document ===== -->
  <xsl:template match="/">
    <xsl:choose>
      <xsl:when test="$credit">
        <CreditNote xmlns="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"><xsl:call-template name="body"/></CreditNote>
      </xsl:when>
      <xsl:otherwise>
        <Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><xsl:call-template name="body"/></Invoice>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template name="body">
    <xsl:variable name="ctx" select="$doc/rsm:ExchangedDocumentContext"/>
    <xsl:variable name="xd" select="$doc/rsm:ExchangedDocument"/>
    <cbc:CustomizationID><xsl:value-of select="normalize-space($ctx/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID)"/></cbc:CustomizationID>
    <xsl:call-template name="text"><xsl:with-param name="name" select="'ProfileID'"/><xsl:with-param name="v" select="normalize-space($ctx/ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID)"/></xsl:call-template>
    <cbc:ID><xsl:value-of select="normalize-space($xd/ram:ID)"/></cbc:ID>
    <cbc:IssueDate><xsl:call-template name="date"><xsl:with-param name="v" select="$xd/ram:IssueDateTime/udt:DateTimeString"/></xsl:call-template></cbc:IssueDate>
    <xsl:if test="not($credit) and $duedate">
      <cbc:DueDate><xsl:call-template name="date"><xsl:with-param name="v" select="$duedate[1]"/></xsl:call-template></cbc:DueDate>
    </xsl:if>
    <xsl:variable name="taxpoint" select="$stl/ram:ApplicableTradeTax/ram:TaxPointDate/udt:DateString"/>
    <xsl:if test="$credit and $taxpoint">
      <cbc:TaxPointDate><xsl:call-template name="date"><xsl:with-param name="v" select="$taxpoint[1]"/></xsl:call-template></cbc:TaxPointDate>
    </xsl:if>
    <xsl:element name="{concat('cbc:', substring('InvoiceTypeCode', 1, 15 * not($credit)), substring('CreditNoteTypeCode', 1, 18 * $credit))}"><xsl:value-of select="$type"/></xsl:element>
    <xsl:for-each select="$xd/ram:IncludedNote[normalize-space(ram:Content)]">
      <cbc:Note>
        <xsl:if test="normalize-space(ram:SubjectCode)"><xsl:value-of select="concat('#', normalize-space(ram:SubjectCode), '#')"/></xsl:if>
        <xsl:value-of select="ram:Content"/>
      </cbc:Note>
    </xsl:for-each>
    <xsl:if test="not($credit) and $taxpoint">
      <cbc:TaxPointDate><xsl:call-template name="date"><xsl:with-param name="v" select="$taxpoint[1]"/></xsl:call-template></cbc:TaxPointDate>
    </xsl:if>
    <cbc:DocumentCurrencyCode><xsl:value-of select="$cur"/></cbc:DocumentCurrencyCode>
    <xsl:call-template name="text"><xsl:with-param name="name" select="'TaxCurrencyCode'"/><xsl:with-param name="v" select="$taxcur"/></xsl:call-template>
    <xsl:call-template name="text"><xsl:with-param name="name" select="'AccountingCost'"/><xsl:with-param name="v" select="$stl/ram:ReceivableSpecifiedTradeAccountingAccount/ram:ID"/></xsl:call-template>
    <xsl:call-template name="text"><xsl:with-param name="name" select="'BuyerReference'"/><xsl:with-param name="v" select="$agr/ram:BuyerReference"/></xsl:call-template>
    <xsl:call-template name="period">
      <xsl:with-param name="p" select="$stl/ram:BillingSpecifiedPeriod"/>
      <xsl:with-param name="code" select="normalize-space($stl/ram:ApplicableTradeTax/ram:DueDateTypeCode)"/>
    </xsl:call-template>
    <xsl:variable name="po" select="normalize-space($agr/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID)"/>
    <xsl:variable name="so" select="normalize-space($agr/ram:SellerOrderReferencedDocument/ram:IssuerAssignedID)"/>
    <xsl:if test="$po or $so">
      <cac:OrderReference>
        <cbc:ID><xsl:choose><xsl:when test="$po"><xsl:value-of select="$po"/></xsl:when><xsl:otherwise>NA</xsl:otherwise></xsl:choose></cbc:ID>
        <xsl:if test="$so"><cbc:SalesOrderID><xsl:value-of select="$so"/></cbc:SalesOrderID></xsl:if>
      </cac:OrderReference>
    </xsl:if>
    <xsl:for-each select="$stl/ram:InvoiceReferencedDocument[normalize-space(ram:IssuerAssignedID)]">
      <cac:BillingReference>
        <cac:InvoiceDocumentReference>
          <cbc:ID><xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/></cbc:ID>
          <xsl:if test="ram:FormattedIssueDateTime/qdt:DateTimeString">
            <cbc:IssueDate><xsl:call-template name="date"><xsl:with-param name="v" select="ram:FormattedIssueDateTime/qdt:DateTimeString"/></xsl:call-template></cbc:IssueDate>
          </xsl:if>
        </cac:InvoiceDocumentReference>
      </cac:BillingReference>
    </xsl:for-each>
    <xsl:for-each select="$dlv/ram:DespatchAdviceReferencedDocument[normalize-space(ram:IssuerAssignedID)]">
      <cac:DespatchDocumentReference><cbc:ID><xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/></cbc:ID></cac:DespatchDocumentReference>
    </xsl:for-each>
    <xsl:for-each select="$dlv/ram:ReceivingAdviceReferencedDocument[normalize-space(ram:IssuerAssignedID)]">
      <cac:ReceiptDocumentReference><cbc:ID><xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/></cbc:ID></cac:ReceiptDocumentReference>
    </xsl:for-each>
    <xsl:if test="not($credit)">
      <xsl:call-template name="originator"/>
      <xsl:call-template name="contract"/>
      <xsl:call-template name="additional-docs"/>
      <xsl:for-each select="$agr/ram:SpecifiedProcuringProject[normalize-space(ram:ID)]">
        <cac:ProjectReference><cbc:ID><xsl:value-of select="normalize-space(ram:ID)"/></cbc:ID></cac:ProjectReference>
      </xsl:for-each>
    </xsl:if>
    <xsl:if test="$credit">
      <xsl:call-template name="contract"/>
      <xsl:call-template name="additional-docs"/>
      <xsl:for-each select="$agr/ram:SpecifiedProcuringProject[normalize-space(ram:ID)]">
        <cac:AdditionalDocumentReference>
          <cbc:ID><xsl:value-of select="normalize-space(ram:ID)"/></cbc:ID>
          <cbc:DocumentTypeCode>50</cbc:DocumentTypeCode>
        </cac:AdditionalDocumentReference>
      </xsl:for-each>
      <xsl:call-template name="originator"/>
    </xsl:if>
    <cac:AccountingSupplierParty>
      <xsl:apply-templates select="$agr/ram:SellerTradeParty" mode="party">
        <xsl:with-param name="sepa" select="$stl/ram:CreditorReferenceID[not($stl/ram:PayeeTradeParty)]"/>
      </xsl:apply-templates>
    </cac:AccountingSupplierParty>
    <cac:AccountingCustomerParty>
      <xsl:apply-templates select="$agr/ram:BuyerTradeParty" mode="party"><xsl:with-param name="single-id" select="true()"/></xsl:apply-templates>
    </cac:AccountingCustomerParty>
    <xsl:for-each select="$stl/ram:PayeeTradeParty">
      <cac:PayeeParty>
        <xsl:for-each select="ram:ID | ram:GlobalID">
          <cac:PartyIdentification><cbc:ID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></cbc:ID></cac:PartyIdentification>
        </xsl:for-each>
        <xsl:for-each select="$stl/ram:CreditorReferenceID">
          <cac:PartyIdentification><cbc:ID schemeID="SEPA"><xsl:value-of select="normalize-space(.)"/></cbc:ID></cac:PartyIdentification>
        </xsl:for-each>
        <cac:PartyName><cbc:Name><xsl:value-of select="normalize-space(ram:Name)"/></cbc:Name></cac:PartyName>
        <xsl:for-each select="ram:SpecifiedLegalOrganization[normalize-space(ram:ID)]">
          <cac:PartyLegalEntity><cbc:CompanyID><xsl:for-each select="ram:ID"><xsl:call-template name="scheme"/></xsl:for-each><xsl:value-of select="normalize-space(ram:ID)"/></cbc:CompanyID></cac:PartyLegalEntity>
        </xsl:for-each>
      </cac:PayeeParty>
    </xsl:for-each>
    <xsl:for-each select="$agr/ram:SellerTaxRepresentativeTradeParty">
      <cac:TaxRepresentativeParty>
        <cac:PartyName><cbc:Name><xsl:value-of select="normalize-space(ram:Name)"/></cbc:Name></cac:PartyName>
        <xsl:apply-templates select="ram:PostalTradeAddress" mode="address"><xsl:with-param name="name" select="'PostalAddress'"/></xsl:apply-templates>
        <xsl:apply-templates select="ram:SpecifiedTaxRegistration/ram:ID" mode="taxscheme"/>
      </cac:TaxRepresentativeParty>
    </xsl:for-each>
    <xsl:call-template name="delivery"/>
    <xsl:call-template name="payment-means"/>
    <xsl:for-each select="$stl/ram:SpecifiedTradePaymentTerms[normalize-space(ram:Description)]">
      <cac:PaymentTerms><cbc:Note><xsl:value-of select="ram:Description"/></cbc:Note></cac:PaymentTerms>
    </xsl:for-each>
    <xsl:apply-templates select="$stl/ram:SpecifiedTradeAllowanceCharge" mode="allowance"/>
    <cac:TaxTotal>
      <xsl:variable name="inCur" select="$sums/ram:TaxTotalAmount[normalize-space(@currencyID) = $cur or not(@currencyID)]"/>
      <xsl:call-template name="amount">
        <xsl:with-param name="name" select="'TaxAmount'"/>
        <xsl:with-param name="v" select="$inCur[1]"/>
      </xsl:call-template>
      <xsl:if test="not($inCur)"><cbc:TaxAmount currencyID="{$cur}">0.00</cbc:TaxAmount></xsl:if>
      <xsl:for-each select="$stl/ram:ApplicableTradeTax">
        <cac:TaxSubtotal>
          <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxableAmount'"/><xsl:with-param name="v" select="ram:BasisAmount"/></xsl:call-template>
          <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxAmount'"/><xsl:with-param name="v" select="ram:CalculatedAmount"/></xsl:call-template>
          <cac:TaxCategory>
            <cbc:ID><xsl:value-of select="normalize-space(ram:CategoryCode)"/></cbc:ID>
            <xsl:call-template name="text"><xsl:with-param name="name" select="'Percent'"/><xsl:with-param name="v" select="normalize-space(ram:RateApplicablePercent)"/></xsl:call-template>
            <xsl:call-template name="text"><xsl:with-param name="name" select="'TaxExemptionReasonCode'"/><xsl:with-param name="v" select="normalize-space(ram:ExemptionReasonCode)"/></xsl:call-template>
            <xsl:call-template name="text"><xsl:with-param name="name" select="'TaxExemptionReason'"/><xsl:with-param name="v" select="ram:ExemptionReason"/></xsl:call-template>
            <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
          </cac:TaxCategory>
        </cac:TaxSubtotal>
      </xsl:for-each>
    </cac:TaxTotal>
    <xsl:if test="$taxcur and $taxcur != $cur and $sums/ram:TaxTotalAmount[normalize-space(@currencyID) = $taxcur]">
      <cac:TaxTotal>
        <xsl:call-template name="amount">
          <xsl:with-param name="name" select="'TaxAmount'"/>
          <xsl:with-param name="v" select="$sums/ram:TaxTotalAmount[normalize-space(@currencyID) = $taxcur]"/>
          <xsl:with-param name="c" select="$taxcur"/>
        </xsl:call-template>
      </cac:TaxTotal>
    </xsl:if>
    <cac:LegalMonetaryTotal>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'LineExtensionAmount'"/><xsl:with-param name="v" select="$sums/ram:LineTotalAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxExclusiveAmount'"/><xsl:with-param name="v" select="$sums/ram:TaxBasisTotalAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxInclusiveAmount'"/><xsl:with-param name="v" select="$sums/ram:GrandTotalAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'AllowanceTotalAmount'"/><xsl:with-param name="v" select="$sums/ram:AllowanceTotalAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'ChargeTotalAmount'"/><xsl:with-param name="v" select="$sums/ram:ChargeTotalAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'PrepaidAmount'"/><xsl:with-param name="v" select="$sums/ram:TotalPrepaidAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'PayableRoundingAmount'"/><xsl:with-param name="v" select="$sums/ram:RoundingAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'PayableAmount'"/><xsl:with-param name="v" select="$sums/ram:DuePayableAmount"/></xsl:call-template>
    </cac:LegalMonetaryTotal>
    <xsl:apply-templates select="$tx/ram:IncludedSupplyChainTradeLineItem"/>
  </xsl:template>

  <!-- ===== references ===== -->
  <xsl:template name="originator">
    <xsl:for-each select="$agr/ram:AdditionalReferencedDocument[normalize-space(ram:TypeCode) = '50']">
      <cac:OriginatorDocumentReference><cbc:ID><xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/></cbc:ID></cac:OriginatorDocumentReference>
    </xsl:for-each>
  </xsl:template>

  <xsl:template name="contract">
    <xsl:for-each select="$agr/ram:ContractReferencedDocument[normalize-space(ram:IssuerAssignedID)]">
      <cac:ContractDocumentReference><cbc:ID><xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/></cbc:ID></cac:ContractDocumentReference>
    </xsl:for-each>
  </xsl:template>

  <xsl:template name="additional-docs">
    <xsl:for-each select="$agr/ram:AdditionalReferencedDocument[normalize-space(ram:TypeCode) != '50']">
      <cac:AdditionalDocumentReference>
        <cbc:ID>
          <xsl:if test="normalize-space(ram:TypeCode) = '130' and normalize-space(ram:ReferenceTypeCode)">
            <xsl:attribute name="schemeID"><xsl:value-of select="normalize-space(ram:ReferenceTypeCode)"/></xsl:attribute>
          </xsl:if>
          <xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/>
        </cbc:ID>
        <xsl:if test="normalize-space(ram:TypeCode) = '130'"><cbc:DocumentTypeCode>130</cbc:DocumentTypeCode></xsl:if>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'DocumentDescription'"/><xsl:with-param name="v" select="ram:Name"/></xsl:call-template>
        <xsl:if test="ram:AttachmentBinaryObject or normalize-space(ram:URIID)">
          <cac:Attachment>
            <xsl:for-each select="ram:AttachmentBinaryObject">
              <cbc:EmbeddedDocumentBinaryObject mimeCode="{normalize-space(@mimeCode)}" filename="{normalize-space(@filename)}"><xsl:value-of select="normalize-space(.)"/></cbc:EmbeddedDocumentBinaryObject>
            </xsl:for-each>
            <xsl:if test="normalize-space(ram:URIID)">
              <cac:ExternalReference><cbc:URI><xsl:value-of select="normalize-space(ram:URIID)"/></cbc:URI></cac:ExternalReference>
            </xsl:if>
          </cac:Attachment>
        </xsl:if>
      </cac:AdditionalDocumentReference>
    </xsl:for-each>
  </xsl:template>

  <xsl:template name="period">
    <xsl:param name="p"/>
    <xsl:param name="code" select="''"/>
    <xsl:if test="$p/ram:StartDateTime or $p/ram:EndDateTime or $code">
      <cac:InvoicePeriod>
        <xsl:if test="$p/ram:StartDateTime"><cbc:StartDate><xsl:call-template name="date"><xsl:with-param name="v" select="$p/ram:StartDateTime/udt:DateTimeString"/></xsl:call-template></cbc:StartDate></xsl:if>
        <xsl:if test="$p/ram:EndDateTime"><cbc:EndDate><xsl:call-template name="date"><xsl:with-param name="v" select="$p/ram:EndDateTime/udt:DateTimeString"/></xsl:call-template></cbc:EndDate></xsl:if>
        <xsl:choose>
          <xsl:when test="$code = '5'"><cbc:DescriptionCode>3</cbc:DescriptionCode></xsl:when>
          <xsl:when test="$code = '29'"><cbc:DescriptionCode>35</cbc:DescriptionCode></xsl:when>
          <xsl:when test="$code = '72'"><cbc:DescriptionCode>432</cbc:DescriptionCode></xsl:when>
        </xsl:choose>
      </cac:InvoicePeriod>
    </xsl:if>
  </xsl:template>

  <!-- ===== parties ===== -->
  <xsl:template match="ram:PostalTradeAddress" mode="address">
    <xsl:param name="name"/>
    <xsl:element name="cac:{$name}">
      <xsl:call-template name="text"><xsl:with-param name="name" select="'StreetName'"/><xsl:with-param name="v" select="ram:LineOne"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'AdditionalStreetName'"/><xsl:with-param name="v" select="ram:LineTwo"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'CityName'"/><xsl:with-param name="v" select="ram:CityName"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'PostalZone'"/><xsl:with-param name="v" select="ram:PostcodeCode"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'CountrySubentity'"/><xsl:with-param name="v" select="ram:CountrySubDivisionName"/></xsl:call-template>
      <xsl:if test="normalize-space(ram:LineThree)"><cac:AddressLine><cbc:Line><xsl:value-of select="ram:LineThree"/></cbc:Line></cac:AddressLine></xsl:if>
      <cac:Country><cbc:IdentificationCode><xsl:value-of select="normalize-space(ram:CountryID)"/></cbc:IdentificationCode></cac:Country>
    </xsl:element>
  </xsl:template>

  <xsl:template match="ram:ID" mode="taxscheme">
    <cac:PartyTaxScheme>
      <cbc:CompanyID><xsl:value-of select="normalize-space(.)"/></cbc:CompanyID>
      <cac:TaxScheme>
        <cbc:ID><xsl:choose><xsl:when test="normalize-space(@schemeID) = 'VA'">VAT</xsl:when><xsl:otherwise>FC</xsl:otherwise></xsl:choose></cbc:ID>
      </cac:TaxScheme>
    </cac:PartyTaxScheme>
  </xsl:template>

  <xsl:template match="*" mode="party">
    <xsl:param name="sepa" select="/.."/>
    <xsl:param name="single-id" select="false()"/>
    <cac:Party>
      <xsl:for-each select="ram:URIUniversalCommunication/ram:URIID[normalize-space(.)]">
        <cbc:EndpointID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></cbc:EndpointID>
      </xsl:for-each>
      <xsl:for-each select="ram:ID | ram:GlobalID">
        <xsl:if test="not($single-id) or position() = 1">
          <cac:PartyIdentification><cbc:ID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></cbc:ID></cac:PartyIdentification>
        </xsl:if>
      </xsl:for-each>
      <xsl:for-each select="$sepa">
        <cac:PartyIdentification><cbc:ID schemeID="SEPA"><xsl:value-of select="normalize-space(.)"/></cbc:ID></cac:PartyIdentification>
      </xsl:for-each>
      <xsl:if test="normalize-space(ram:SpecifiedLegalOrganization/ram:TradingBusinessName)">
        <cac:PartyName><cbc:Name><xsl:value-of select="ram:SpecifiedLegalOrganization/ram:TradingBusinessName"/></cbc:Name></cac:PartyName>
      </xsl:if>
      <xsl:apply-templates select="ram:PostalTradeAddress" mode="address"><xsl:with-param name="name" select="'PostalAddress'"/></xsl:apply-templates>
      <xsl:apply-templates select="ram:SpecifiedTaxRegistration/ram:ID[normalize-space(@schemeID) = 'VA']" mode="taxscheme"/>
      <xsl:apply-templates select="ram:SpecifiedTaxRegistration/ram:ID[normalize-space(@schemeID) != 'VA']" mode="taxscheme"/>
      <cac:PartyLegalEntity>
        <cbc:RegistrationName><xsl:value-of select="ram:Name"/></cbc:RegistrationName>
        <xsl:for-each select="ram:SpecifiedLegalOrganization/ram:ID[normalize-space(.)]">
          <cbc:CompanyID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></cbc:CompanyID>
        </xsl:for-each>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'CompanyLegalForm'"/><xsl:with-param name="v" select="ram:Description"/></xsl:call-template>
      </cac:PartyLegalEntity>
      <xsl:for-each select="ram:DefinedTradeContact[1]">
        <cac:Contact>
          <xsl:choose>
            <xsl:when test="normalize-space(ram:PersonName)"><cbc:Name><xsl:value-of select="ram:PersonName"/></cbc:Name></xsl:when>
            <xsl:when test="normalize-space(ram:DepartmentName)"><cbc:Name><xsl:value-of select="ram:DepartmentName"/></cbc:Name></xsl:when>
          </xsl:choose>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'Telephone'"/><xsl:with-param name="v" select="ram:TelephoneUniversalCommunication/ram:CompleteNumber"/></xsl:call-template>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'ElectronicMail'"/><xsl:with-param name="v" select="ram:EmailURIUniversalCommunication/ram:URIID"/></xsl:call-template>
        </cac:Contact>
      </xsl:for-each>
    </cac:Party>
  </xsl:template>

  <!-- ===== delivery ===== -->
  <xsl:template name="delivery">
    <xsl:variable name="ship" select="$dlv/ram:ShipToTradeParty"/>
    <xsl:variable name="event" select="$dlv/ram:ActualDeliverySupplyChainEvent/ram:OccurrenceDateTime/udt:DateTimeString"/>
    <xsl:if test="$ship or $event">
      <cac:Delivery>
        <xsl:if test="$event"><cbc:ActualDeliveryDate><xsl:call-template name="date"><xsl:with-param name="v" select="$event[1]"/></xsl:call-template></cbc:ActualDeliveryDate></xsl:if>
        <xsl:if test="$ship/ram:ID or $ship/ram:GlobalID or $ship/ram:PostalTradeAddress">
          <cac:DeliveryLocation>
            <xsl:for-each select="($ship/ram:ID | $ship/ram:GlobalID)[1]">
              <cbc:ID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></cbc:ID>
            </xsl:for-each>
            <xsl:apply-templates select="$ship/ram:PostalTradeAddress" mode="address"><xsl:with-param name="name" select="'Address'"/></xsl:apply-templates>
          </cac:DeliveryLocation>
        </xsl:if>
        <xsl:if test="normalize-space($ship/ram:Name)">
          <cac:DeliveryParty><cac:PartyName><cbc:Name><xsl:value-of select="$ship/ram:Name"/></cbc:Name></cac:PartyName></cac:DeliveryParty>
        </xsl:if>
      </cac:Delivery>
    </xsl:if>
  </xsl:template>

  <!-- ===== payment ===== -->
  <xsl:template name="payment-means">
    <xsl:variable name="mandate" select="normalize-space($stl/ram:SpecifiedTradePaymentTerms/ram:DirectDebitMandateID)"/>
    <xsl:variable name="means" select="$stl/ram:SpecifiedTradeSettlementPaymentMeans"/>
    <!-- UBL allows one PaymentMandate (UBL-SR-55): it goes to the first direct-debit means, else the first. -->
    <xsl:variable name="debit" select="$means[normalize-space(ram:TypeCode) = '59' or normalize-space(ram:TypeCode) = '49' or ram:PayerPartyDebtorFinancialAccount][1]"/>
    <xsl:variable name="mandateHolder" select="$debit | $means[1][not($debit)]"/>
    <xsl:for-each select="$means">
      <cac:PaymentMeans>
        <cbc:PaymentMeansCode>
          <xsl:if test="normalize-space(ram:Information)"><xsl:attribute name="name"><xsl:value-of select="normalize-space(ram:Information)"/></xsl:attribute></xsl:if>
          <xsl:value-of select="normalize-space(ram:TypeCode)"/>
        </cbc:PaymentMeansCode>
        <xsl:if test="$credit and $duedate and position() = 1">
          <cbc:PaymentDueDate><xsl:call-template name="date"><xsl:with-param name="v" select="$duedate[1]"/></xsl:call-template></cbc:PaymentDueDate>
        </xsl:if>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'PaymentID'"/><xsl:with-param name="v" select="$stl/ram:PaymentReference"/></xsl:call-template>
        <xsl:for-each select="ram:ApplicableTradeSettlementFinancialCard">
          <cac:CardAccount>
            <cbc:PrimaryAccountNumberID><xsl:value-of select="normalize-space(ram:ID)"/></cbc:PrimaryAccountNumberID>
            <cbc:NetworkID>NA</cbc:NetworkID>
            <xsl:call-template name="text"><xsl:with-param name="name" select="'HolderName'"/><xsl:with-param name="v" select="ram:CardholderName"/></xsl:call-template>
          </cac:CardAccount>
        </xsl:for-each>
        <xsl:for-each select="ram:PayeePartyCreditorFinancialAccount">
          <cac:PayeeFinancialAccount>
            <cbc:ID><xsl:value-of select="normalize-space(ram:IBANID | ram:ProprietaryID)"/></cbc:ID>
            <xsl:call-template name="text"><xsl:with-param name="name" select="'Name'"/><xsl:with-param name="v" select="ram:AccountName"/></xsl:call-template>
            <xsl:for-each select="../ram:PayeeSpecifiedCreditorFinancialInstitution[normalize-space(ram:BICID)]">
              <cac:FinancialInstitutionBranch><cbc:ID><xsl:value-of select="normalize-space(ram:BICID)"/></cbc:ID></cac:FinancialInstitutionBranch>
            </xsl:for-each>
          </cac:PayeeFinancialAccount>
        </xsl:for-each>
        <xsl:if test="($mandate or ram:PayerPartyDebtorFinancialAccount) and count(. | $mandateHolder) = 1">
          <cac:PaymentMandate>
            <xsl:if test="$mandate"><cbc:ID><xsl:value-of select="$mandate"/></cbc:ID></xsl:if>
            <xsl:for-each select="ram:PayerPartyDebtorFinancialAccount">
              <cac:PayerFinancialAccount><cbc:ID><xsl:value-of select="normalize-space(ram:IBANID)"/></cbc:ID></cac:PayerFinancialAccount>
            </xsl:for-each>
          </cac:PaymentMandate>
        </xsl:if>
      </cac:PaymentMeans>
    </xsl:for-each>
    <xsl:if test="$credit and $duedate and not($stl/ram:SpecifiedTradeSettlementPaymentMeans)">
      <!-- A UBL CreditNote carries BT-9 only in PaymentMeans: code 1 = instrument not defined. -->
      <cac:PaymentMeans>
        <cbc:PaymentMeansCode>1</cbc:PaymentMeansCode>
        <cbc:PaymentDueDate><xsl:call-template name="date"><xsl:with-param name="v" select="$duedate[1]"/></xsl:call-template></cbc:PaymentDueDate>
      </cac:PaymentMeans>
    </xsl:if>
  </xsl:template>

  <!-- ===== allowances and charges ===== -->
  <xsl:template match="ram:SpecifiedTradeAllowanceCharge" mode="allowance">
    <cac:AllowanceCharge>
      <cbc:ChargeIndicator><xsl:value-of select="normalize-space(ram:ChargeIndicator/udt:Indicator)"/></cbc:ChargeIndicator>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'AllowanceChargeReasonCode'"/><xsl:with-param name="v" select="normalize-space(ram:ReasonCode)"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'AllowanceChargeReason'"/><xsl:with-param name="v" select="ram:Reason"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'MultiplierFactorNumeric'"/><xsl:with-param name="v" select="normalize-space(ram:CalculationPercent)"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'Amount'"/><xsl:with-param name="v" select="ram:ActualAmount"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'BaseAmount'"/><xsl:with-param name="v" select="ram:BasisAmount"/></xsl:call-template>
      <xsl:for-each select="ram:CategoryTradeTax">
        <cac:TaxCategory>
          <cbc:ID><xsl:value-of select="normalize-space(ram:CategoryCode)"/></cbc:ID>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'Percent'"/><xsl:with-param name="v" select="normalize-space(ram:RateApplicablePercent)"/></xsl:call-template>
          <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
        </cac:TaxCategory>
      </xsl:for-each>
    </cac:AllowanceCharge>
  </xsl:template>

  <!-- ===== lines ===== -->
  <xsl:template match="ram:IncludedSupplyChainTradeLineItem">
    <xsl:variable name="la" select="ram:SpecifiedLineTradeAgreement"/>
    <xsl:variable name="ls" select="ram:SpecifiedLineTradeSettlement"/>
    <xsl:variable name="p" select="ram:SpecifiedTradeProduct"/>
    <xsl:variable name="q" select="ram:SpecifiedLineTradeDelivery/ram:BilledQuantity"/>
    <xsl:element name="{concat('cac:', substring('InvoiceLine', 1, 11 * not($credit)), substring('CreditNoteLine', 1, 14 * $credit))}">
      <cbc:ID><xsl:value-of select="normalize-space(ram:AssociatedDocumentLineDocument/ram:LineID)"/></cbc:ID>
      <xsl:variable name="notes" select="ram:AssociatedDocumentLineDocument/ram:IncludedNote[normalize-space(ram:Content)]"/>
      <xsl:if test="$notes">
        <!-- EN 16931 allows one line note (UBL-SR-34): EXTENDED's several notes are joined. -->
        <cbc:Note><xsl:for-each select="$notes"><xsl:if test="position() > 1"><xsl:text>&#10;</xsl:text></xsl:if><xsl:value-of select="ram:Content"/></xsl:for-each></cbc:Note>
      </xsl:if>
      <xsl:element name="{concat('cbc:', substring('InvoicedQuantity', 1, 16 * not($credit)), substring('CreditedQuantity', 1, 16 * $credit))}">
        <xsl:attribute name="unitCode"><xsl:value-of select="normalize-space($q/@unitCode)"/></xsl:attribute>
        <xsl:value-of select="normalize-space($q)"/>
      </xsl:element>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'LineExtensionAmount'"/><xsl:with-param name="v" select="$ls/ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'AccountingCost'"/><xsl:with-param name="v" select="$ls/ram:ReceivableSpecifiedTradeAccountingAccount/ram:ID"/></xsl:call-template>
      <xsl:call-template name="period"><xsl:with-param name="p" select="$ls/ram:BillingSpecifiedPeriod"/></xsl:call-template>
      <xsl:if test="normalize-space($la/ram:BuyerOrderReferencedDocument/ram:LineID)">
        <cac:OrderLineReference><cbc:LineID><xsl:value-of select="normalize-space($la/ram:BuyerOrderReferencedDocument/ram:LineID)"/></cbc:LineID></cac:OrderLineReference>
      </xsl:if>
      <xsl:for-each select="$ls/ram:AdditionalReferencedDocument[normalize-space(ram:IssuerAssignedID)][1]">
        <cac:DocumentReference>
          <cbc:ID>
            <xsl:if test="normalize-space(ram:ReferenceTypeCode)"><xsl:attribute name="schemeID"><xsl:value-of select="normalize-space(ram:ReferenceTypeCode)"/></xsl:attribute></xsl:if>
            <xsl:value-of select="normalize-space(ram:IssuerAssignedID)"/>
          </cbc:ID>
          <cbc:DocumentTypeCode>130</cbc:DocumentTypeCode>
        </cac:DocumentReference>
      </xsl:for-each>
      <xsl:apply-templates select="$ls/ram:SpecifiedTradeAllowanceCharge" mode="allowance"/>
      <cac:Item>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'Description'"/><xsl:with-param name="v" select="$p/ram:Description"/></xsl:call-template>
        <cbc:Name><xsl:value-of select="$p/ram:Name"/></cbc:Name>
        <xsl:if test="normalize-space($p/ram:BuyerAssignedID)"><cac:BuyersItemIdentification><cbc:ID><xsl:value-of select="normalize-space($p/ram:BuyerAssignedID)"/></cbc:ID></cac:BuyersItemIdentification></xsl:if>
        <xsl:if test="normalize-space($p/ram:SellerAssignedID)"><cac:SellersItemIdentification><cbc:ID><xsl:value-of select="normalize-space($p/ram:SellerAssignedID)"/></cbc:ID></cac:SellersItemIdentification></xsl:if>
        <xsl:for-each select="$p/ram:GlobalID[normalize-space(.)][1]">
          <cac:StandardItemIdentification><cbc:ID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></cbc:ID></cac:StandardItemIdentification>
        </xsl:for-each>
        <xsl:if test="normalize-space($p/ram:OriginTradeCountry/ram:ID)"><cac:OriginCountry><cbc:IdentificationCode><xsl:value-of select="normalize-space($p/ram:OriginTradeCountry/ram:ID)"/></cbc:IdentificationCode></cac:OriginCountry></xsl:if>
        <xsl:for-each select="$p/ram:DesignatedProductClassification/ram:ClassCode[normalize-space(.)]">
          <cac:CommodityClassification>
            <cbc:ItemClassificationCode>
              <xsl:if test="normalize-space(@listID)"><xsl:attribute name="listID"><xsl:value-of select="normalize-space(@listID)"/></xsl:attribute></xsl:if>
              <xsl:if test="normalize-space(@listVersionID)"><xsl:attribute name="listVersionID"><xsl:value-of select="normalize-space(@listVersionID)"/></xsl:attribute></xsl:if>
              <xsl:value-of select="normalize-space(.)"/>
            </cbc:ItemClassificationCode>
          </cac:CommodityClassification>
        </xsl:for-each>
        <cac:ClassifiedTaxCategory>
          <cbc:ID><xsl:value-of select="normalize-space($ls/ram:ApplicableTradeTax/ram:CategoryCode)"/></cbc:ID>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'Percent'"/><xsl:with-param name="v" select="normalize-space($ls/ram:ApplicableTradeTax/ram:RateApplicablePercent)"/></xsl:call-template>
          <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
        </cac:ClassifiedTaxCategory>
        <xsl:for-each select="$p/ram:ApplicableProductCharacteristic">
          <cac:AdditionalItemProperty>
            <cbc:Name><xsl:value-of select="ram:Description"/></cbc:Name>
            <cbc:Value><xsl:value-of select="ram:Value"/></cbc:Value>
          </cac:AdditionalItemProperty>
        </xsl:for-each>
      </cac:Item>
      <xsl:variable name="net" select="$la/ram:NetPriceProductTradePrice"/>
      <xsl:variable name="gross" select="$la/ram:GrossPriceProductTradePrice"/>
      <cac:Price>
        <xsl:call-template name="amount"><xsl:with-param name="name" select="'PriceAmount'"/><xsl:with-param name="v" select="$net/ram:ChargeAmount"/></xsl:call-template>
        <xsl:for-each select="($net/ram:BasisQuantity | $gross/ram:BasisQuantity)[1]">
          <cbc:BaseQuantity>
            <xsl:if test="normalize-space(@unitCode)"><xsl:attribute name="unitCode"><xsl:value-of select="normalize-space(@unitCode)"/></xsl:attribute></xsl:if>
            <xsl:value-of select="normalize-space(.)"/>
          </cbc:BaseQuantity>
        </xsl:for-each>
        <xsl:if test="normalize-space($gross/ram:ChargeAmount)">
          <cac:AllowanceCharge>
            <cbc:ChargeIndicator>false</cbc:ChargeIndicator>
            <xsl:choose>
              <xsl:when test="normalize-space($gross/ram:AppliedTradeAllowanceCharge/ram:ActualAmount)">
                <xsl:call-template name="amount"><xsl:with-param name="name" select="'Amount'"/><xsl:with-param name="v" select="$gross/ram:AppliedTradeAllowanceCharge/ram:ActualAmount"/></xsl:call-template>
              </xsl:when>
              <xsl:otherwise><cbc:Amount currencyID="{$cur}">0</cbc:Amount></xsl:otherwise>
            </xsl:choose>
            <xsl:call-template name="amount"><xsl:with-param name="name" select="'BaseAmount'"/><xsl:with-param name="v" select="$gross/ram:ChargeAmount"/></xsl:call-template>
          </cac:AllowanceCharge>
        </xsl:if>
      </cac:Price>
    </xsl:element>
  </xsl:template>
</xsl:stylesheet>
