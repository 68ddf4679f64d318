<?xml version="1.0" encoding="UTF-8"?>
<!-- UBL 2.1 Invoice / CreditNote to UN/CEFACT CII D16B (Factur-X EN 16931 element set), EN 16931 core:
     header, notes, references, parties, delivery, payment means and terms, allowances/charges, VAT breakdown,
     totals, lines, attachments. Dates become format 102 (YYYYMMDD). XSLT 1.0 (lxml). -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
    xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
    xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
    xmlns:qdt="urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
    exclude-result-prefixes="cac cbc">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:variable name="doc" select="/*"/>
  <xsl:variable name="cur" select="normalize-space($doc/cbc:DocumentCurrencyCode)"/>
  <xsl:variable name="taxcur" select="normalize-space($doc/cbc:TaxCurrencyCode)"/>
  <xsl:variable name="seller" select="$doc/cac:AccountingSupplierParty/cac:Party"/>
  <xsl:variable name="buyer" select="$doc/cac:AccountingCustomerParty/cac:Party"/>
  <xsl:variable name="payee" select="$doc/cac:PayeeParty"/>
  <xsl:variable name="sepa" select="($seller | $payee)/cac:PartyIdentification/cbc:ID[normalize-space(@schemeID) = 'SEPA']"/>
  <xsl:variable name="project" select="$doc/cac:ProjectReference | $doc/self::*[local-name() = 'CreditNote']/cac:AdditionalDocumentReference[normalize-space(cbc:DocumentTypeCode) = '50']"/>

  <!-- ===== helpers ===== -->
  <xsl:template name="dt">
    <xsl:param name="name"/>
    <xsl:param name="v"/>
    <xsl:param name="ns" select="'udt'"/>
    <xsl:element name="ram:{$name}">
      <xsl:element name="{$ns}:DateTimeString" namespace="{concat('urn:un:unece:uncefact:data:standard:', substring('UnqualifiedDataType', 1, 19 * ($ns = 'udt')), substring('QualifiedDataType', 1, 17 * ($ns = 'qdt')), ':100')}">
        <xsl:attribute name="format">102</xsl:attribute>
        <xsl:value-of select="translate(substring(normalize-space($v), 1, 10), '-', '')"/>
      </xsl:element>
    </xsl:element>
  </xsl:template>

  <xsl:template name="text">
    <xsl:param name="name"/>
    <xsl:param name="v"/>
    <xsl:if test="normalize-space($v)">
      <xsl:element name="ram:{$name}"><xsl:value-of select="$v"/></xsl:element>
    </xsl:if>
  </xsl:template>

  <xsl:template name="scheme">
    <xsl:if test="normalize-space(@schemeID)">
      <xsl:attribute name="schemeID"><xsl:value-of select="normalize-space(@schemeID)"/></xsl:attribute>
    </xsl:if>
  </xsl:template>

  <xsl:template name="indicator">
    <xsl:param name="v"/>
    <ram:ChargeIndicator><udt:Indicator><xsl:value-of select="normalize-space($v)"/></udt:Indicator></ram:ChargeIndicator>
  </xsl:template>

  <!-- ===== document ===== -->
  <xsl:template match="/">
    <rsm:CrossIndustryInvoice>
      <rsm:ExchangedDocumentContext>
        <xsl:if test="normalize-space($doc/cbc:ProfileID)">
          <ram:BusinessProcessSpecifiedDocumentContextParameter><ram:ID><xsl:value-of select="normalize-space($doc/cbc:ProfileID)"/></ram:ID></ram:BusinessProcessSpecifiedDocumentContextParameter>
        </xsl:if>
        <ram:GuidelineSpecifiedDocumentContextParameter><ram:ID><xsl:value-of select="normalize-space($doc/cbc:CustomizationID)"/></ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>
      </rsm:ExchangedDocumentContext>
      <rsm:ExchangedDocument>
        <ram:ID><xsl:value-of select="normalize-space($doc/cbc:ID)"/></ram:ID>
        <ram:TypeCode><xsl:value-of select="normalize-space($doc/cbc:InvoiceTypeCode | $doc/cbc:CreditNoteTypeCode)"/></ram:TypeCode>
        <xsl:call-template name="dt"><xsl:with-param name="name" select="'IssueDateTime'"/><xsl:with-param name="v" select="$doc/cbc:IssueDate"/></xsl:call-template>
        <xsl:for-each select="$doc/cbc:Note[normalize-space(.)]">
          <ram:IncludedNote>
            <xsl:choose>
              <xsl:when test="starts-with(., '#') and substring(., 5, 1) = '#'">
                <ram:Content><xsl:value-of select="substring(., 6)"/></ram:Content>
                <ram:SubjectCode><xsl:value-of select="substring(., 2, 3)"/></ram:SubjectCode>
              </xsl:when>
              <xsl:otherwise><ram:Content><xsl:value-of select="."/></ram:Content></xsl:otherwise>
            </xsl:choose>
          </ram:IncludedNote>
        </xsl:for-each>
      </rsm:ExchangedDocument>
      <rsm:SupplyChainTradeTransaction>
        <xsl:apply-templates select="$doc/cac:InvoiceLine | $doc/cac:CreditNoteLine"/>
        <xsl:call-template name="agreement"/>
        <xsl:call-template name="delivery"/>
        <xsl:call-template name="settlement"/>
      </rsm:SupplyChainTradeTransaction>
    </rsm:CrossIndustryInvoice>
  </xsl:template>

  <!-- ===== parties ===== -->
  <xsl:template name="address">
    <xsl:param name="a"/>
    <xsl:if test="$a">
      <ram:PostalTradeAddress>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'PostcodeCode'"/><xsl:with-param name="v" select="$a/cbc:PostalZone"/></xsl:call-template>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'LineOne'"/><xsl:with-param name="v" select="$a/cbc:StreetName"/></xsl:call-template>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'LineTwo'"/><xsl:with-param name="v" select="$a/cbc:AdditionalStreetName"/></xsl:call-template>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'LineThree'"/><xsl:with-param name="v" select="$a/cac:AddressLine/cbc:Line"/></xsl:call-template>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'CityName'"/><xsl:with-param name="v" select="$a/cbc:CityName"/></xsl:call-template>
        <ram:CountryID><xsl:value-of select="normalize-space($a/cac:Country/cbc:IdentificationCode)"/></ram:CountryID>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'CountrySubDivisionName'"/><xsl:with-param name="v" select="$a/cbc:CountrySubentity"/></xsl:call-template>
      </ram:PostalTradeAddress>
    </xsl:if>
  </xsl:template>

  <xsl:template name="ids">
    <xsl:param name="ids"/>
    <xsl:for-each select="$ids[not(normalize-space(@schemeID))]"><ram:ID><xsl:value-of select="normalize-space(.)"/></ram:ID></xsl:for-each>
    <xsl:for-each select="$ids[normalize-space(@schemeID)]"><ram:GlobalID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></ram:GlobalID></xsl:for-each>
  </xsl:template>

  <xsl:template name="party">
    <xsl:param name="name"/>
    <xsl:param name="p"/>
    <xsl:element name="ram:{$name}">
      <xsl:call-template name="ids"><xsl:with-param name="ids" select="$p/cac:PartyIdentification/cbc:ID[normalize-space(@schemeID) != 'SEPA' or not(@schemeID)]"/></xsl:call-template>
      <ram:Name>
        <xsl:choose>
          <xsl:when test="normalize-space($p/cac:PartyLegalEntity/cbc:RegistrationName)"><xsl:value-of select="$p/cac:PartyLegalEntity/cbc:RegistrationName"/></xsl:when>
          <xsl:otherwise><xsl:value-of select="$p/cac:PartyName/cbc:Name"/></xsl:otherwise>
        </xsl:choose>
      </ram:Name>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'Description'"/><xsl:with-param name="v" select="$p/cac:PartyLegalEntity/cbc:CompanyLegalForm"/></xsl:call-template>
      <xsl:variable name="legal" select="$p/cac:PartyLegalEntity/cbc:CompanyID[normalize-space(.)]"/>
      <xsl:variable name="trading" select="$p/cac:PartyName/cbc:Name[normalize-space(.)][normalize-space(.) != normalize-space($p/cac:PartyLegalEntity/cbc:RegistrationName) or not($p/cac:PartyLegalEntity/cbc:RegistrationName)][$p/cac:PartyLegalEntity/cbc:RegistrationName]"/>
      <xsl:if test="$legal or $trading">
        <ram:SpecifiedLegalOrganization>
          <xsl:for-each select="$legal[1]"><ram:ID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></ram:ID></xsl:for-each>
          <xsl:for-each select="$trading[1]"><ram:TradingBusinessName><xsl:value-of select="."/></ram:TradingBusinessName></xsl:for-each>
        </ram:SpecifiedLegalOrganization>
      </xsl:if>
      <xsl:for-each select="$p/cac:Contact[normalize-space(.)]">
        <ram:DefinedTradeContact>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'PersonName'"/><xsl:with-param name="v" select="cbc:Name"/></xsl:call-template>
          <xsl:if test="normalize-space(cbc:Telephone)"><ram:TelephoneUniversalCommunication><ram:CompleteNumber><xsl:value-of select="cbc:Telephone"/></ram:CompleteNumber></ram:TelephoneUniversalCommunication></xsl:if>
          <xsl:if test="normalize-space(cbc:ElectronicMail)"><ram:EmailURIUniversalCommunication><ram:URIID><xsl:value-of select="normalize-space(cbc:ElectronicMail)"/></ram:URIID></ram:EmailURIUniversalCommunication></xsl:if>
        </ram:DefinedTradeContact>
      </xsl:for-each>
      <xsl:call-template name="address"><xsl:with-param name="a" select="$p/cac:PostalAddress"/></xsl:call-template>
      <xsl:for-each select="$p/cbc:EndpointID[normalize-space(.)]">
        <ram:URIUniversalCommunication><ram:URIID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></ram:URIID></ram:URIUniversalCommunication>
      </xsl:for-each>
      <xsl:call-template name="tax-registrations"><xsl:with-param name="p" select="$p"/></xsl:call-template>
    </xsl:element>
  </xsl:template>

  <xsl:template name="tax-registrations">
    <xsl:param name="p"/>
    <xsl:for-each select="$p/cac:PartyTaxScheme[normalize-space(cbc:CompanyID)]">
      <ram:SpecifiedTaxRegistration>
        <ram:ID>
          <xsl:attribute name="schemeID"><xsl:choose><xsl:when test="normalize-space(cac:TaxScheme/cbc:ID) = 'VAT'">VA</xsl:when><xsl:otherwise>FC</xsl:otherwise></xsl:choose></xsl:attribute>
          <xsl:value-of select="normalize-space(cbc:CompanyID)"/>
        </ram:ID>
      </ram:SpecifiedTaxRegistration>
    </xsl:for-each>
  </xsl:template>

  <!-- ===== agreement ===== -->
  <xsl:template name="agreement">
    <ram:ApplicableHeaderTradeAgreement>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'BuyerReference'"/><xsl:with-param name="v" select="$doc/cbc:BuyerReference"/></xsl:call-template>
      <xsl:call-template name="party"><xsl:with-param name="name" select="'SellerTradeParty'"/><xsl:with-param name="p" select="$seller"/></xsl:call-template>
      <xsl:call-template name="party"><xsl:with-param name="name" select="'BuyerTradeParty'"/><xsl:with-param name="p" select="$buyer"/></xsl:call-template>
      <xsl:for-each select="$doc/cac:TaxRepresentativeParty">
        <ram:SellerTaxRepresentativeTradeParty>
          <ram:Name><xsl:value-of select="cac:PartyName/cbc:Name"/></ram:Name>
          <xsl:call-template name="address"><xsl:with-param name="a" select="cac:PostalAddress"/></xsl:call-template>
          <xsl:call-template name="tax-registrations"><xsl:with-param name="p" select="."/></xsl:call-template>
        </ram:SellerTaxRepresentativeTradeParty>
      </xsl:for-each>
      <xsl:if test="normalize-space($doc/cac:OrderReference/cbc:SalesOrderID)">
        <ram:SellerOrderReferencedDocument><ram:IssuerAssignedID><xsl:value-of select="normalize-space($doc/cac:OrderReference/cbc:SalesOrderID)"/></ram:IssuerAssignedID></ram:SellerOrderReferencedDocument>
      </xsl:if>
      <xsl:variable name="po" select="normalize-space($doc/cac:OrderReference/cbc:ID)"/>
      <xsl:if test="$po and not($po = 'NA' and normalize-space($doc/cac:OrderReference/cbc:SalesOrderID))">
        <ram:BuyerOrderReferencedDocument><ram:IssuerAssignedID><xsl:value-of select="$po"/></ram:IssuerAssignedID></ram:BuyerOrderReferencedDocument>
      </xsl:if>
      <xsl:for-each select="$doc/cac:ContractDocumentReference[normalize-space(cbc:ID)][1]">
        <ram:ContractReferencedDocument><ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID></ram:ContractReferencedDocument>
      </xsl:for-each>
      <xsl:for-each select="$doc/cac:AdditionalDocumentReference[count(. | $project) != count($project)]">
        <ram:AdditionalReferencedDocument>
          <ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'URIID'"/><xsl:with-param name="v" select="normalize-space(cac:Attachment/cac:ExternalReference/cbc:URI)"/></xsl:call-template>
          <ram:TypeCode><xsl:choose><xsl:when test="normalize-space(cbc:DocumentTypeCode) = '130'">130</xsl:when><xsl:otherwise>916</xsl:otherwise></xsl:choose></ram:TypeCode>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'Name'"/><xsl:with-param name="v" select="cbc:DocumentDescription"/></xsl:call-template>
          <xsl:for-each select="cac:Attachment/cbc:EmbeddedDocumentBinaryObject">
            <ram:AttachmentBinaryObject mimeCode="{normalize-space(@mimeCode)}" filename="{normalize-space(@filename)}"><xsl:value-of select="normalize-space(.)"/></ram:AttachmentBinaryObject>
          </xsl:for-each>
          <xsl:if test="normalize-space(cbc:DocumentTypeCode) = '130' and normalize-space(cbc:ID/@schemeID)">
            <ram:ReferenceTypeCode><xsl:value-of select="normalize-space(cbc:ID/@schemeID)"/></ram:ReferenceTypeCode>
          </xsl:if>
        </ram:AdditionalReferencedDocument>
      </xsl:for-each>
      <xsl:for-each select="$doc/cac:OriginatorDocumentReference[normalize-space(cbc:ID)]">
        <ram:AdditionalReferencedDocument>
          <ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID>
          <ram:TypeCode>50</ram:TypeCode>
        </ram:AdditionalReferencedDocument>
      </xsl:for-each>
      <xsl:for-each select="$project[1]">
        <ram:SpecifiedProcuringProject>
          <ram:ID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:ID>
          <ram:Name>Project reference</ram:Name>
        </ram:SpecifiedProcuringProject>
      </xsl:for-each>
    </ram:ApplicableHeaderTradeAgreement>
  </xsl:template>

  <!-- ===== delivery ===== -->
  <xsl:template name="delivery">
    <xsl:variable name="d" select="$doc/cac:Delivery[1]"/>
    <ram:ApplicableHeaderTradeDelivery>
      <xsl:if test="$d/cac:DeliveryLocation or $d/cac:DeliveryParty">
        <ram:ShipToTradeParty>
          <xsl:call-template name="ids"><xsl:with-param name="ids" select="$d/cac:DeliveryLocation/cbc:ID"/></xsl:call-template>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'Name'"/><xsl:with-param name="v" select="$d/cac:DeliveryParty/cac:PartyName/cbc:Name"/></xsl:call-template>
          <xsl:call-template name="address"><xsl:with-param name="a" select="$d/cac:DeliveryLocation/cac:Address"/></xsl:call-template>
        </ram:ShipToTradeParty>
      </xsl:if>
      <xsl:if test="normalize-space($d/cbc:ActualDeliveryDate)">
        <ram:ActualDeliverySupplyChainEvent>
          <xsl:call-template name="dt"><xsl:with-param name="name" select="'OccurrenceDateTime'"/><xsl:with-param name="v" select="$d/cbc:ActualDeliveryDate"/></xsl:call-template>
        </ram:ActualDeliverySupplyChainEvent>
      </xsl:if>
      <xsl:for-each select="$doc/cac:DespatchDocumentReference[normalize-space(cbc:ID)][1]">
        <ram:DespatchAdviceReferencedDocument><ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID></ram:DespatchAdviceReferencedDocument>
      </xsl:for-each>
      <xsl:for-each select="$doc/cac:ReceiptDocumentReference[normalize-space(cbc:ID)][1]">
        <ram:ReceivingAdviceReferencedDocument><ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID></ram:ReceivingAdviceReferencedDocument>
      </xsl:for-each>
    </ram:ApplicableHeaderTradeDelivery>
  </xsl:template>

  <!-- ===== settlement ===== -->
  <xsl:template name="allowance">
    <xsl:param name="header" select="false()"/>
    <ram:SpecifiedTradeAllowanceCharge>
      <xsl:call-template name="indicator"><xsl:with-param name="v" select="cbc:ChargeIndicator"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'CalculationPercent'"/><xsl:with-param name="v" select="normalize-space(cbc:MultiplierFactorNumeric)"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'BasisAmount'"/><xsl:with-param name="v" select="normalize-space(cbc:BaseAmount)"/></xsl:call-template>
      <ram:ActualAmount><xsl:value-of select="normalize-space(cbc:Amount)"/></ram:ActualAmount>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'ReasonCode'"/><xsl:with-param name="v" select="normalize-space(cbc:AllowanceChargeReasonCode)"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'Reason'"/><xsl:with-param name="v" select="cbc:AllowanceChargeReason"/></xsl:call-template>
      <xsl:if test="$header">
        <xsl:for-each select="cac:TaxCategory[1]">
          <ram:CategoryTradeTax>
            <ram:TypeCode>VAT</ram:TypeCode>
            <ram:CategoryCode><xsl:value-of select="normalize-space(cbc:ID)"/></ram:CategoryCode>
            <xsl:call-template name="text"><xsl:with-param name="name" select="'RateApplicablePercent'"/><xsl:with-param name="v" select="normalize-space(cbc:Percent)"/></xsl:call-template>
          </ram:CategoryTradeTax>
        </xsl:for-each>
      </xsl:if>
    </ram:SpecifiedTradeAllowanceCharge>
  </xsl:template>

  <xsl:template name="settlement">
    <xsl:variable name="total" select="$doc/cac:LegalMonetaryTotal"/>
    <xsl:variable name="period" select="$doc/cac:InvoicePeriod[1]"/>
    <xsl:variable name="due" select="$doc/cbc:DueDate | $doc/cac:PaymentMeans/cbc:PaymentDueDate"/>
    <xsl:variable name="mandate" select="$doc/cac:PaymentMeans/cac:PaymentMandate/cbc:ID[normalize-space(.)]"/>
    <ram:ApplicableHeaderTradeSettlement>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'CreditorReferenceID'"/><xsl:with-param name="v" select="normalize-space($sepa[1])"/></xsl:call-template>
      <xsl:call-template name="text"><xsl:with-param name="name" select="'PaymentReference'"/><xsl:with-param name="v" select="normalize-space($doc/cac:PaymentMeans/cbc:PaymentID)"/></xsl:call-template>
      <!-- CII's BR-53 refuses a VAT accounting currency equal to the invoice currency: it says nothing then. -->
      <xsl:if test="$taxcur and $taxcur != $cur"><ram:TaxCurrencyCode><xsl:value-of select="$taxcur"/></ram:TaxCurrencyCode></xsl:if>
      <ram:InvoiceCurrencyCode><xsl:value-of select="$cur"/></ram:InvoiceCurrencyCode>
      <xsl:for-each select="$payee">
        <ram:PayeeTradeParty>
          <xsl:call-template name="ids"><xsl:with-param name="ids" select="cac:PartyIdentification/cbc:ID[normalize-space(@schemeID) != 'SEPA' or not(@schemeID)]"/></xsl:call-template>
          <ram:Name><xsl:value-of select="cac:PartyName/cbc:Name"/></ram:Name>
          <xsl:for-each select="cac:PartyLegalEntity/cbc:CompanyID[normalize-space(.)][1]">
            <ram:SpecifiedLegalOrganization><ram:ID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></ram:ID></ram:SpecifiedLegalOrganization>
          </xsl:for-each>
        </ram:PayeeTradeParty>
      </xsl:for-each>
      <xsl:for-each select="$doc/cac:PaymentMeans">
        <ram:SpecifiedTradeSettlementPaymentMeans>
          <ram:TypeCode><xsl:value-of select="normalize-space(cbc:PaymentMeansCode)"/></ram:TypeCode>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'Information'"/><xsl:with-param name="v" select="normalize-space(cbc:PaymentMeansCode/@name)"/></xsl:call-template>
          <xsl:for-each select="cac:CardAccount">
            <ram:ApplicableTradeSettlementFinancialCard>
              <ram:ID><xsl:value-of select="normalize-space(cbc:PrimaryAccountNumberID)"/></ram:ID>
              <xsl:call-template name="text"><xsl:with-param name="name" select="'CardholderName'"/><xsl:with-param name="v" select="cbc:HolderName"/></xsl:call-template>
            </ram:ApplicableTradeSettlementFinancialCard>
          </xsl:for-each>
          <xsl:for-each select="cac:PaymentMandate/cac:PayerFinancialAccount[normalize-space(cbc:ID)]">
            <ram:PayerPartyDebtorFinancialAccount><ram:IBANID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IBANID></ram:PayerPartyDebtorFinancialAccount>
          </xsl:for-each>
          <xsl:for-each select="cac:PayeeFinancialAccount">
            <ram:PayeePartyCreditorFinancialAccount>
              <ram:IBANID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IBANID>
              <xsl:call-template name="text"><xsl:with-param name="name" select="'AccountName'"/><xsl:with-param name="v" select="cbc:Name"/></xsl:call-template>
            </ram:PayeePartyCreditorFinancialAccount>
            <xsl:for-each select="cac:FinancialInstitutionBranch[normalize-space(cbc:ID)]">
              <ram:PayeeSpecifiedCreditorFinancialInstitution><ram:BICID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:BICID></ram:PayeeSpecifiedCreditorFinancialInstitution>
            </xsl:for-each>
          </xsl:for-each>
        </ram:SpecifiedTradeSettlementPaymentMeans>
      </xsl:for-each>
      <xsl:for-each select="$doc/cac:TaxTotal[cac:TaxSubtotal][1]/cac:TaxSubtotal">
        <ram:ApplicableTradeTax>
          <ram:CalculatedAmount><xsl:value-of select="normalize-space(cbc:TaxAmount)"/></ram:CalculatedAmount>
          <ram:TypeCode>VAT</ram:TypeCode>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'ExemptionReason'"/><xsl:with-param name="v" select="cac:TaxCategory/cbc:TaxExemptionReason"/></xsl:call-template>
          <ram:BasisAmount><xsl:value-of select="normalize-space(cbc:TaxableAmount)"/></ram:BasisAmount>
          <ram:CategoryCode><xsl:value-of select="normalize-space(cac:TaxCategory/cbc:ID)"/></ram:CategoryCode>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'ExemptionReasonCode'"/><xsl:with-param name="v" select="normalize-space(cac:TaxCategory/cbc:TaxExemptionReasonCode)"/></xsl:call-template>
          <xsl:if test="normalize-space($doc/cbc:TaxPointDate) and position() = 1">
            <ram:TaxPointDate><udt:DateString format="102"><xsl:value-of select="translate(substring(normalize-space($doc/cbc:TaxPointDate), 1, 10), '-', '')"/></udt:DateString></ram:TaxPointDate>
          </xsl:if>
          <xsl:variable name="code" select="normalize-space($period/cbc:DescriptionCode)"/>
          <xsl:choose>
            <xsl:when test="$code = '3'"><ram:DueDateTypeCode>5</ram:DueDateTypeCode></xsl:when>
            <xsl:when test="$code = '35'"><ram:DueDateTypeCode>29</ram:DueDateTypeCode></xsl:when>
            <xsl:when test="$code = '432'"><ram:DueDateTypeCode>72</ram:DueDateTypeCode></xsl:when>
          </xsl:choose>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'RateApplicablePercent'"/><xsl:with-param name="v" select="normalize-space(cac:TaxCategory/cbc:Percent)"/></xsl:call-template>
        </ram:ApplicableTradeTax>
      </xsl:for-each>
      <xsl:if test="normalize-space($period/cbc:StartDate) or normalize-space($period/cbc:EndDate)">
        <ram:BillingSpecifiedPeriod>
          <xsl:if test="normalize-space($period/cbc:StartDate)"><xsl:call-template name="dt"><xsl:with-param name="name" select="'StartDateTime'"/><xsl:with-param name="v" select="$period/cbc:StartDate"/></xsl:call-template></xsl:if>
          <xsl:if test="normalize-space($period/cbc:EndDate)"><xsl:call-template name="dt"><xsl:with-param name="name" select="'EndDateTime'"/><xsl:with-param name="v" select="$period/cbc:EndDate"/></xsl:call-template></xsl:if>
        </ram:BillingSpecifiedPeriod>
      </xsl:if>
      <xsl:for-each select="$doc/cac:AllowanceCharge"><xsl:call-template name="allowance"><xsl:with-param name="header" select="true()"/></xsl:call-template></xsl:for-each>
      <xsl:variable name="terms" select="$doc/cac:PaymentTerms/cbc:Note[normalize-space(.)]"/>
      <xsl:if test="$terms or $due or $mandate">
        <ram:SpecifiedTradePaymentTerms>
          <xsl:if test="$terms"><ram:Description><xsl:for-each select="$terms"><xsl:if test="position() > 1"><xsl:text>&#10;</xsl:text></xsl:if><xsl:value-of select="."/></xsl:for-each></ram:Description></xsl:if>
          <xsl:if test="$due"><xsl:call-template name="dt"><xsl:with-param name="name" select="'DueDateDateTime'"/><xsl:with-param name="v" select="$due[1]"/></xsl:call-template></xsl:if>
          <xsl:if test="$mandate"><ram:DirectDebitMandateID><xsl:value-of select="normalize-space($mandate[1])"/></ram:DirectDebitMandateID></xsl:if>
        </ram:SpecifiedTradePaymentTerms>
      </xsl:if>
      <ram:SpecifiedTradeSettlementHeaderMonetarySummation>
        <ram:LineTotalAmount><xsl:value-of select="normalize-space($total/cbc:LineExtensionAmount)"/></ram:LineTotalAmount>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'ChargeTotalAmount'"/><xsl:with-param name="v" select="normalize-space($total/cbc:ChargeTotalAmount)"/></xsl:call-template>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'AllowanceTotalAmount'"/><xsl:with-param name="v" select="normalize-space($total/cbc:AllowanceTotalAmount)"/></xsl:call-template>
        <ram:TaxBasisTotalAmount><xsl:value-of select="normalize-space($total/cbc:TaxExclusiveAmount)"/></ram:TaxBasisTotalAmount>
        <xsl:for-each select="$doc/cac:TaxTotal/cbc:TaxAmount[normalize-space(@currencyID) = $cur][1]">
          <ram:TaxTotalAmount currencyID="{$cur}"><xsl:value-of select="normalize-space(.)"/></ram:TaxTotalAmount>
        </xsl:for-each>
        <xsl:if test="$taxcur and $taxcur != $cur">
          <xsl:for-each select="$doc/cac:TaxTotal/cbc:TaxAmount[normalize-space(@currencyID) = $taxcur][1]">
            <ram:TaxTotalAmount currencyID="{$taxcur}"><xsl:value-of select="normalize-space(.)"/></ram:TaxTotalAmount>
          </xsl:for-each>
        </xsl:if>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'RoundingAmount'"/><xsl:with-param name="v" select="normalize-space($total/cbc:PayableRoundingAmount)"/></xsl:call-template>
        <ram:GrandTotalAmount><xsl:value-of select="normalize-space($total/cbc:TaxInclusiveAmount)"/></ram:GrandTotalAmount>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'TotalPrepaidAmount'"/><xsl:with-param name="v" select="normalize-space($total/cbc:PrepaidAmount)"/></xsl:call-template>
        <ram:DuePayableAmount><xsl:value-of select="normalize-space($total/cbc:PayableAmount)"/></ram:DuePayableAmount>
      </ram:SpecifiedTradeSettlementHeaderMonetarySummation>
      <xsl:for-each select="$doc/cac:BillingReference/cac:InvoiceDocumentReference[normalize-space(cbc:ID)]">
        <ram:InvoiceReferencedDocument>
          <ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID>
          <xsl:if test="normalize-space(cbc:IssueDate)">
            <xsl:call-template name="dt"><xsl:with-param name="name" select="'FormattedIssueDateTime'"/><xsl:with-param name="v" select="cbc:IssueDate"/><xsl:with-param name="ns" select="'qdt'"/></xsl:call-template>
          </xsl:if>
        </ram:InvoiceReferencedDocument>
      </xsl:for-each>
      <xsl:if test="normalize-space($doc/cbc:AccountingCost)">
        <ram:ReceivableSpecifiedTradeAccountingAccount><ram:ID><xsl:value-of select="normalize-space($doc/cbc:AccountingCost)"/></ram:ID></ram:ReceivableSpecifiedTradeAccountingAccount>
      </xsl:if>
    </ram:ApplicableHeaderTradeSettlement>
  </xsl:template>

  <!-- ===== lines ===== -->
  <xsl:template match="cac:InvoiceLine | cac:CreditNoteLine">
    <xsl:variable name="item" select="cac:Item"/>
    <xsl:variable name="price" select="cac:Price"/>
    <xsl:variable name="q" select="cbc:InvoicedQuantity | cbc:CreditedQuantity"/>
    <ram:IncludedSupplyChainTradeLineItem>
      <ram:AssociatedDocumentLineDocument>
        <ram:LineID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:LineID>
        <xsl:if test="normalize-space(cbc:Note)"><ram:IncludedNote><ram:Content><xsl:value-of select="cbc:Note[1]"/></ram:Content></ram:IncludedNote></xsl:if>
      </ram:AssociatedDocumentLineDocument>
      <ram:SpecifiedTradeProduct>
        <xsl:for-each select="$item/cac:StandardItemIdentification/cbc:ID[normalize-space(.)][1]">
          <ram:GlobalID><xsl:call-template name="scheme"/><xsl:value-of select="normalize-space(.)"/></ram:GlobalID>
        </xsl:for-each>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'SellerAssignedID'"/><xsl:with-param name="v" select="normalize-space($item/cac:SellersItemIdentification/cbc:ID)"/></xsl:call-template>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'BuyerAssignedID'"/><xsl:with-param name="v" select="normalize-space($item/cac:BuyersItemIdentification/cbc:ID)"/></xsl:call-template>
        <ram:Name><xsl:value-of select="$item/cbc:Name"/></ram:Name>
        <xsl:call-template name="text"><xsl:with-param name="name" select="'Description'"/><xsl:with-param name="v" select="$item/cbc:Description[1]"/></xsl:call-template>
        <xsl:for-each select="$item/cac:AdditionalItemProperty">
          <ram:ApplicableProductCharacteristic>
            <ram:Description><xsl:value-of select="cbc:Name"/></ram:Description>
            <ram:Value><xsl:value-of select="cbc:Value"/></ram:Value>
          </ram:ApplicableProductCharacteristic>
        </xsl:for-each>
        <xsl:for-each select="$item/cac:CommodityClassification/cbc:ItemClassificationCode[normalize-space(.)]">
          <ram:DesignatedProductClassification>
            <ram:ClassCode>
              <xsl:if test="normalize-space(@listID)"><xsl:attribute name="listID"><xsl:value-of select="normalize-space(@listID)"/></xsl:attribute></xsl:if>
              <xsl:if test="normalize-space(@listVersionID)"><xsl:attribute name="listVersionID"><xsl:value-of select="normalize-space(@listVersionID)"/></xsl:attribute></xsl:if>
              <xsl:value-of select="normalize-space(.)"/>
            </ram:ClassCode>
          </ram:DesignatedProductClassification>
        </xsl:for-each>
        <xsl:if test="normalize-space($item/cac:OriginCountry/cbc:IdentificationCode)">
          <ram:OriginTradeCountry><ram:ID><xsl:value-of select="normalize-space($item/cac:OriginCountry/cbc:IdentificationCode)"/></ram:ID></ram:OriginTradeCountry>
        </xsl:if>
      </ram:SpecifiedTradeProduct>
      <ram:SpecifiedLineTradeAgreement>
        <xsl:if test="normalize-space(cac:OrderLineReference/cbc:LineID)">
          <ram:BuyerOrderReferencedDocument><ram:LineID><xsl:value-of select="normalize-space(cac:OrderLineReference/cbc:LineID)"/></ram:LineID></ram:BuyerOrderReferencedDocument>
        </xsl:if>
        <xsl:variable name="pac" select="$price/cac:AllowanceCharge[normalize-space(cbc:ChargeIndicator) = 'false'][1]"/>
        <xsl:if test="normalize-space($pac/cbc:BaseAmount)">
          <ram:GrossPriceProductTradePrice>
            <ram:ChargeAmount><xsl:value-of select="normalize-space($pac/cbc:BaseAmount)"/></ram:ChargeAmount>
            <xsl:if test="normalize-space($price/cbc:BaseQuantity)">
              <ram:BasisQuantity>
                <xsl:if test="normalize-space($price/cbc:BaseQuantity/@unitCode)"><xsl:attribute name="unitCode"><xsl:value-of select="normalize-space($price/cbc:BaseQuantity/@unitCode)"/></xsl:attribute></xsl:if>
                <xsl:value-of select="normalize-space($price/cbc:BaseQuantity)"/>
              </ram:BasisQuantity>
            </xsl:if>
            <xsl:if test="normalize-space($pac/cbc:Amount)">
              <ram:AppliedTradeAllowanceCharge>
                <xsl:call-template name="indicator"><xsl:with-param name="v" select="'false'"/></xsl:call-template>
                <ram:ActualAmount><xsl:value-of select="normalize-space($pac/cbc:Amount)"/></ram:ActualAmount>
              </ram:AppliedTradeAllowanceCharge>
            </xsl:if>
          </ram:GrossPriceProductTradePrice>
        </xsl:if>
        <ram:NetPriceProductTradePrice>
          <ram:ChargeAmount><xsl:value-of select="normalize-space($price/cbc:PriceAmount)"/></ram:ChargeAmount>
          <xsl:if test="normalize-space($price/cbc:BaseQuantity)">
            <ram:BasisQuantity>
              <xsl:if test="normalize-space($price/cbc:BaseQuantity/@unitCode)"><xsl:attribute name="unitCode"><xsl:value-of select="normalize-space($price/cbc:BaseQuantity/@unitCode)"/></xsl:attribute></xsl:if>
              <xsl:value-of select="normalize-space($price/cbc:BaseQuantity)"/>
            </ram:BasisQuantity>
          </xsl:if>
        </ram:NetPriceProductTradePrice>
      </ram:SpecifiedLineTradeAgreement>
      <ram:SpecifiedLineTradeDelivery>
        <ram:BilledQuantity unitCode="{normalize-space($q/@unitCode)}"><xsl:value-of select="normalize-space($q)"/></ram:BilledQuantity>
      </ram:SpecifiedLineTradeDelivery>
      <ram:SpecifiedLineTradeSettlement>
        <ram:ApplicableTradeTax>
          <ram:TypeCode>VAT</ram:TypeCode>
          <ram:CategoryCode><xsl:value-of select="normalize-space($item/cac:ClassifiedTaxCategory/cbc:ID)"/></ram:CategoryCode>
          <xsl:call-template name="text"><xsl:with-param name="name" select="'RateApplicablePercent'"/><xsl:with-param name="v" select="normalize-space($item/cac:ClassifiedTaxCategory/cbc:Percent)"/></xsl:call-template>
        </ram:ApplicableTradeTax>
        <xsl:variable name="lp" select="cac:InvoicePeriod[1]"/>
        <xsl:if test="normalize-space($lp/cbc:StartDate) or normalize-space($lp/cbc:EndDate)">
          <ram:BillingSpecifiedPeriod>
            <xsl:if test="normalize-space($lp/cbc:StartDate)"><xsl:call-template name="dt"><xsl:with-param name="name" select="'StartDateTime'"/><xsl:with-param name="v" select="$lp/cbc:StartDate"/></xsl:call-template></xsl:if>
            <xsl:if test="normalize-space($lp/cbc:EndDate)"><xsl:call-template name="dt"><xsl:with-param name="name" select="'EndDateTime'"/><xsl:with-param name="v" select="$lp/cbc:EndDate"/></xsl:call-template></xsl:if>
          </ram:BillingSpecifiedPeriod>
        </xsl:if>
        <xsl:for-each select="cac:AllowanceCharge"><xsl:call-template name="allowance"/></xsl:for-each>
        <ram:SpecifiedTradeSettlementLineMonetarySummation>
          <ram:LineTotalAmount><xsl:value-of select="normalize-space(cbc:LineExtensionAmount)"/></ram:LineTotalAmount>
        </ram:SpecifiedTradeSettlementLineMonetarySummation>
        <xsl:for-each select="cac:DocumentReference[normalize-space(cbc:ID)][1]">
          <ram:AdditionalReferencedDocument>
            <ram:IssuerAssignedID><xsl:value-of select="normalize-space(cbc:ID)"/></ram:IssuerAssignedID>
            <ram:TypeCode>130</ram:TypeCode>
            <xsl:if test="normalize-space(cbc:ID/@schemeID)"><ram:ReferenceTypeCode><xsl:value-of select="normalize-space(cbc:ID/@schemeID)"/></ram:ReferenceTypeCode></xsl:if>
          </ram:AdditionalReferencedDocument>
        </xsl:for-each>
        <xsl:if test="normalize-space(cbc:AccountingCost)">
          <ram:ReceivableSpecifiedTradeAccountingAccount><ram:ID><xsl:value-of select="normalize-space(cbc:AccountingCost)"/></ram:ID></ram:ReceivableSpecifiedTradeAccountingAccount>
        </xsl:if>
      </ram:SpecifiedLineTradeSettlement>
    </ram:IncludedSupplyChainTradeLineItem>
  </xsl:template>
</xsl:stylesheet>
